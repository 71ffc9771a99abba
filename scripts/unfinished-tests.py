"""Names the tests a swift-testing log shows started and never ended (passed, failed or skipped).

usage: unfinished-tests.py LOG
The test command prints them when a pass runs past its time limit: what hung, not only that it did.
"""
import re
import sys


def name(text):
    text = text.strip()
    if text.startswith('"'):
        end = text.find('"', 1)
        return text[1:end] if end > 0 else text
    return text.split(" ")[0]


started = {}
with open(sys.argv[1], errors="replace") as log:
    for number, line in enumerate(log, 1):
        began = re.search(r"◇ Test (.*) started\.", line)
        if began and not began.group(1).startswith("case passing") and began.group(1) != "run":
            started[name(began.group(1))] = number
        # "✘ Test x recorded an issue at ...: Expectation failed" is a test still running, not one that ended.
        ended = None if "recorded an issue" in line or "recorded a known issue" in line \
            else re.search(r"[✔✘↷━] Test (.*) (passed|failed|skipped)", line)
        if ended:
            started.pop(name(ended.group(1)), None)
for test, number in sorted(started.items(), key=lambda item: item[1]):
    print(f"  line {number}: {test}")
