"""Notices of a new space (PRODUCT section 2, docs/notices.md): each `registered` space gets an activation code
and a notice, by e-mail when the registry gave an address, else by letter; a minor's notice goes to the
representative(s), naming the child; a minor who comes of age gets their own.

One module per job, each with its public API (nothing is re-exported here: callers import the module):
- `words.py`: what a notice says (French then English), who it goes to, and the sealed notice rows. No I/O.
- `addressees.py`: the holder and representatives read from the registry's data, with the notices' own
  decision to read them.
- `issue.py`: codes and notices for registered spaces, exactly once (`send`, `notify_addressed` for the
  registry import), and one space at a time (`notify_in`, `ask_again`, `of_age_in`).
- `delivery.py`: the e-mails' delivery jobs and their delivery (outbox or SMTP relay, never twice), and the
  operator's way out of an uncertain e-mail (`uncertain`, `resolve`).
- `letters.py`: letter batches (PDF and manifest), their hand-over and the retention purge.

Dependencies go one way: words <- addressees <- delivery, letters <- issue. `issue` drives the lifecycle's
`notify` and `request` through spaces/transitions.py, and spaces/lifecycle.py calls `issue` (a space asked
for again, a minor's coming of age), never the reverse.

No medical content is ever in a notice: only the dates, the code and how to oppose or activate."""
