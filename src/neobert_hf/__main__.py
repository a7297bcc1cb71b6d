"""`python -m neobert_hf` runs the `neobert-hf` command."""

import sys

from neobert_hf.cli.main import main


if __name__ == "__main__":
    sys.exit(main())
