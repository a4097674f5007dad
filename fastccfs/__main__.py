from fastccfs.cli import main

raise SystemExit(main())
