"""Zero-shot primitives under every user of them: template sets, the one `--classes` grammar, text encoding
(trimmed, cached), class embeddings, the logit-scale rule and probabilities, and the templates a model
declares. Imports only `cache`, `errors`, `identity`, `io` (atomic writes) and `models`; `evaluate`, `apps`,
`data`, `train`, `demo` and the CLI build on it (the layers: docs/architecture.md)."""
