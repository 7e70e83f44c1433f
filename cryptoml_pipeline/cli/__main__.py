"""``python -m cryptoml_pipeline.cli``: the ``cryptoml`` console script."""

from cryptoml_pipeline.cli import main

raise SystemExit(main())
