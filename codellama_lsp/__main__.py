import sys

from codellama_lsp.cli import main

sys.exit(main())
