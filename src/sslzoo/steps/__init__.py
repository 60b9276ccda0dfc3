"""CLI steps: one module per `python -m sslzoo <step>`, each with add_arguments() and main()."""
