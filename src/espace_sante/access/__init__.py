"""The one decision point, with no I/O: who acts (`actors`), what they may do (`policy`, with SMART scopes in
`scopes` and the habilitation matrix in `matrix`), the service's named actors (`named`), who may change a
space's state (`lifecycle`), and why, as codes worded in French and English (`reasons`)."""
