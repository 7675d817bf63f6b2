"""The queries of the long-run tests: mostly ranking questions, every tenth a prompt to complete."""
from alfred_fm import CompletionQuery, RankedQuery

WORDS = ["good", "bad", "red", "blue", "fast", "slow", "old", "new", "warm", "cold", "loud", "quiet"]


def queries(n: int) -> list:
    return [CompletionQuery(f"Story {i}: once upon a time") if i % 10 == 9 else
            RankedQuery(f"Item {i}: is this {WORDS[i % len(WORDS)]} or {WORDS[(i * 7) % len(WORDS)]}? Answer:",
                        [" yes", " no", " it is hard to say"])
            for i in range(n)]
