"""The demo world (development only): people, professionals and documents (`world`), their rights and accounts
(`access`), loaded idempotently through conditional creates (`entries`)."""
