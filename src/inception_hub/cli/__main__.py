"""`python -m inception_hub.cli`: the `inception-hub` command."""

import sys

from . import main

sys.exit(main())
