import sys

from lpms.cli import main

sys.exit(main())
