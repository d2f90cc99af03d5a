"""`python -m lg_deploy` runs the lg-deploy command line."""

from lg_deploy.cli import main

raise SystemExit(main())
