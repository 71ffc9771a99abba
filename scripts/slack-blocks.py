"""Validates Gatehouse's Slack messages with slack_sdk's Block Kit models (tests).

usage: slack-blocks.py FILE   FILE holds {"name": message-or-modal, ...} as Gatehouse renders them.
Each message's blocks (and each modal) must parse into slack_sdk's models, pass their
validate_json() (lengths, counts, required fields), and come back unchanged from to_dict():
a field the models do not know, or one they would drop, fails the check.
"""
import json
import sys

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View


def check_blocks(name, blocks, problems):
    if not isinstance(blocks, list) or not blocks or len(blocks) > 50:
        problems.append(f"{name}: blocks must be a list of 1 to 50 blocks")
        return
    for index, raw in enumerate(blocks):
        block = Block.parse(raw)
        if block is None or type(block) is Block:
            problems.append(f"{name}: block {index} of type {raw.get('type')!r} is not a Block Kit block")
            continue
        try:
            # to_dict() validates the nested elements too
            block.validate_json()
            model = block.to_dict()
        except Exception as error:  # slack_sdk raises SlackObjectFormationError
            problems.append(f"{name}: block {index} ({raw.get('type')}): {error}")
            continue
        if model != raw:
            problems.append(f"{name}: block {index} does not survive slack_sdk's model:\n  sent {json.dumps(raw, sort_keys=True)}\n  model {json.dumps(model, sort_keys=True)}")


def main():
    with open(sys.argv[1], encoding="utf-8") as handle:
        messages = json.load(handle)
    problems = []
    for name, message in sorted(messages.items()):
        if message.get("type") == "modal":
            view = View(**message)
            try:
                view.validate_json()
            except Exception as error:
                problems.append(f"{name}: {error}")
            check_blocks(name, message["blocks"], problems)
        else:
            if not isinstance(message.get("text"), str) or not message["text"]:
                problems.append(f"{name}: a message needs a non-empty `text` fallback")
            if "blocks" in message:
                check_blocks(name, message["blocks"], problems)
    for problem in problems:
        print(problem)
    print(f"{len(messages)} messages checked, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
