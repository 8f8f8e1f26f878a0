"""The holder's pages, about her own space or a child's she represents (`whose`): the space, its documents."""
