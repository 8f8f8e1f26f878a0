"""The holder's rights over her record (CSP L1111-15 to L1111-19): consent and blocks, sharing of profile
sections, emergency refusals, masking, care-team declarations and emergency accesses, the médecin traitant and
legal representatives (`changes`). Each change is allowed by `access.policy.may_change` and traced in the space's
chain."""
