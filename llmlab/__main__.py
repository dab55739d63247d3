"""`python -m llmlab` is the same as the `llmlab` command."""

from llmlab.cli.main import main

if __name__ == "__main__":
    main()
