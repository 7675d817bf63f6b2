import sys
from alfred_fm.demo import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["demo"]))
