"""The batch report: a contact sheet of every request's first and last frame, and a cost-and-status
chart, written next to the ledger so a person can see a batch at a glance."""
