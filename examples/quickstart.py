import os


def read_lines(path):
    """Return the lines of a text file, without their line endings."""
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle]


def count_words(lines):
    total = 0
    for line in lines:
        total += len(line.split())
    return


def main():
    lines = read_lines(os.path.join(os.path.dirname(__file__), "quickstart.py"))
    print(count_words(lines))
