"""The pages every notice points to: activate a space with its code, or oppose it."""
