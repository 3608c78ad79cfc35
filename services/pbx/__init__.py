"""The PBX side of the directory: every user change is pushed to the PBX at once.

- `lines`: what the PBX must hold for a user (`PbxLine`), read from the directory.
- `backend`: the `PbxBackend` interface; `asterisk` (PJSIP Realtime tables) and `builtin`
  (Switchboard's own tables) implement it; `factory.Pbx` (backend, pusher, reconciler) is
  built from the settings by the composition root, `services/container.py`.
- `pusher`: `PbxPusher` drains the outbox's "pbx" channel; `status` tells how far a user got.
- `huntgroups`, `credentials`: hunt groups and desk phone SIP logins.
- `reconcile`: compares the directory with the PBX, reports drift and repairs it.

The modules import each other directly; this package imports nothing, so `services.journal`
can use `services.pbx.signals` without an import cycle.
"""
