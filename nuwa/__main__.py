import sys

from nuwa.commands.cli import main

sys.exit(main())
