"""The shell: what calls in. The web app and its webhook plumbing, the arq worker and its wiring,
the CLI, `baton up` and onboarding. It builds the resources (`orchestrators/resources.py`) and hands
runs to the orchestrators; nothing below it (orchestrators, handlers, adapters in `bot/`, `config/`)
imports it back (tests/test_layering.py)."""
