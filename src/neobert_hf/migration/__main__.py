"""`python -m neobert_hf.migration --markdown > docs/migrating.md`."""

from .render import main


raise SystemExit(main())
