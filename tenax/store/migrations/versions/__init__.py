"""One module per schema revision. Revisions are frozen snapshots: never edit one that shipped."""
