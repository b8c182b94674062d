import sys

from gclab.cli import main

sys.exit(main())
