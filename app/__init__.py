"""The application layer: what a person or a scheduler runs (the `winnodes` command). It sits above
`deployments` and the flows, which it starts; the library (`winnodes`) never imports it."""
