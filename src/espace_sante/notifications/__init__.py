"""Telling the holder (issue 18, "Notifications"; docs/notifications.md): what happened to her record that she
is told of (`kinds.py`), on her dashboard and by e-mail (`delivery.py`), and what her pages show (`board.py`).

A notification is recorded by the code that records its event, in the event's transaction, with its delivery
job (storage/notifications.tell): a new document (record/documents/metadata.py), a professional's first access
(audit/trace.py), an emergency access (rights/changes.py), a result waiting for its consultation and one
released (record/documents/hidden.py). So an event and its notification commit together or not at all; the
job then sends its e-mail once (mail.hand_over: never twice, never lost without a trace). The e-mail says what
kind of thing happened and which page to open, never what, never who: nothing medical leaves the service.
Her choices per kind (rights/changes.save_notification_choices) decide the e-mail; the dashboard shows every
notification whatever she chose, so that a holder without an e-mail address sees them too."""
