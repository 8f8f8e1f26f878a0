"""A space for every insured person, from the insurer's registry to its destruction.

- `registry/`: the registry import; `identity`: who a space's holder is, whatever form the identity has.
- `notices/`: activation codes and notices (e-mail, letters); `activation`, `opposition`: what a code does.
- `lifecycle`: the states and who may change them (rule in `access/lifecycle.py`); `transitions`: one
  transition of one space; `deaths`: closing on a registry's death date.
- `legacy/`: the former DMP's documents (IHE XDM)."""
