#!/usr/bin/env python3
"""Checks that ctest runs exactly the test cases each Catch2 binary holds.

    python3 scripts/check_test_registration.py BUILD_DIR

catch_discover_tests turns every test case into one ctest entry whose command is
`BINARY "<test name>" --warn NoTests`. A name that the discovery splits or mangles would become
entries that match nothing (failing, thanks to --warn NoTests) plus a test case that no entry runs;
this check catches the second half: for every binary, the test names of its entries must equal the
names `BINARY --list-test-names-only` prints. Exits 1 naming each difference.
"""
import collections
import json
import re
import subprocess
import sys


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    build = sys.argv[1]
    listing = subprocess.run(["ctest", "--test-dir", build, "--show-only=json-v1"], capture_output=True, text=True,
                             check=True)
    registered = collections.defaultdict(set)
    for test in json.loads(listing.stdout)["tests"]:
        command = test.get("command", [])
        if len(command) >= 4 and command[-2:] == ["--warn", "NoTests"]:
            # The filter is the name with Catch2's escapes (a backslash before , [ ] and itself): undo them.
            registered[command[0]].add(re.sub(r"\\(.)", r"\1", command[1]))
    if not registered:
        print(f"check_test_registration: no Catch2 tests found in {build}", file=sys.stderr)
        return 1
    problems, cases = [], 0
    for binary, names in sorted(registered.items()):
        # Catch2 v2 exits with the number of test cases it listed, so only a signal is a failure.
        listed = subprocess.run([binary, "--list-test-names-only"], capture_output=True, text=True)
        if listed.returncode < 0:
            problems.append(f"{binary}: --list-test-names-only died with signal {-listed.returncode}")
            continue
        held = {line.strip() for line in listed.stdout.splitlines() if line.strip()}
        cases += len(held)
        for name in sorted(held - names):
            problems.append(f"{binary}: test case never run by ctest: {name!r}")
        for name in sorted(names - held):
            problems.append(f"{binary}: ctest entry matches no test case: {name!r}")
    for p in problems:
        print("check_test_registration: " + p, file=sys.stderr)
    if not problems:
        print(f"check_test_registration: {cases} test cases in {len(registered)} binaries, each run by one ctest entry")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
