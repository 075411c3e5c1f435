import sys

from grass.cli import main

sys.exit(main())
