import sys

from motionguide.cli import main

sys.exit(main())
