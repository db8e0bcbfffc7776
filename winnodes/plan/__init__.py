"""Pure day-2 decisions (no I/O): what a rotation does next (ROT1-ROT4), which templates retention
may delete (G10), and what `winnodes status` prints. Adapters read the real state into the small
dataclasses here; flows act on the decisions. Table-tested without servers."""
