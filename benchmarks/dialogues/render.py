"""Run the README's dialogue scripts through the assistant and print them as the README's blockquotes.

    python benchmarks/dialogues/render.py benchmarks/dialogues/0266-51630-0461.jsonl …   # Markdown on stdout

Each script is the JSONL `speclm ask --script` reads; the assistant is the default one (embedded SmolLM2 +
bundled adapter), one thread per script. The reply's lines (headline, bullets) are kept as Markdown inside
the quote; the count of sentences the claim check dropped is printed after each dialogue.
"""
from __future__ import annotations

import sys
from pathlib import Path


def main(paths: list[str]) -> None:
    from speclm.agent.ask_cli import read_script
    from speclm.agent.assistant import AgentConfig, Assistant

    with Assistant(AgentConfig()) as a:
        for path in paths:
            thread = a.new_thread_id()
            dropped = 0
            print(f"<!-- {Path(path).name} -->")
            for t in read_script(path):
                r = a.turn(thread, t["text"], spectrum_path=t["spectrum"], sdss_id=t["sdss_id"])
                dropped += len((r.grounding or {}).get("dropped") or [])
                att = "  [attached]" if t["spectrum"] else ""
                print(f"> **User:** {t['text']}{att}\n>")
                lines = (r.reply or "").split("\n")
                print(f"> **Assistant:** {lines[0]}")
                for line in lines[1:]:
                    print(f"> {line}" if line else ">")
                print()
            print(f"<!-- claim check: {dropped} sentences dropped -->\n")


if __name__ == "__main__":
    main(sys.argv[1:])
