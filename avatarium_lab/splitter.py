"""Streaming sentence/clause splitter: cuts the LLM's text stream into speakable pieces as it arrives.

Speech can start as soon as the first piece is complete, long before the model finishes. A sentence ends at
``.``, ``!``, ``?`` or ``…`` followed by whitespace (so "3.14" and "e.g." mid-stream are not cut), or at a
newline; a sentence end that arrives last in the stream is taken at once when nothing that follows could
change its meaning (not after a digit, an initial or an abbreviation), saving a token of latency. The first piece may end early at a clause mark (``,`` ``;`` ``:`` ``—``) once it is long enough,
because the first audio is what a listener waits for. Pieces longer than ``max_chars`` are cut at a word
boundary. With ``first_words`` the first piece may also end at a word boundary after that many words, for
the lowest time to first audio (the voice then gets a continuing, comma-like intonation for it: see
``Pipeline``). ``speakable`` strips what a voice should not read aloud (markdown, emoji, URLs' punctuation noise).
"""

from __future__ import annotations

import re
import unicodedata

# Words that end with a period without ending a sentence (lower-case, without the dot).
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e approx dept est fig inc ltd no co mt ave".split()
)
_SENTENCE_END = re.compile(r"""([.!?…]+)(["')\]]*)(\s+)""")
_CLAUSE_END = re.compile(r"""([,;:]|\s[—–-])(\s+)""")
_NEWLINE = re.compile(r"\n+")
_WORD = re.compile(r"\S+\s+")
_EAGER_END = re.compile(r"""\w([.!?]|[!?]+)["')\]]*$""")


class SentenceSplitter:
    """Feed text deltas, get complete pieces back; ``flush()`` at the end of the stream.

    >>> s = SentenceSplitter()
    >>> s.feed("Hello there. How")
    ['Hello there.']
    >>> s.feed(" are you?")
    []
    >>> s.flush()
    ['How are you?']
    """

    def __init__(
        self, *, min_chars: int = 12, first_clause_chars: int = 24, max_chars: int = 180, first_words: int = 0
    ) -> None:
        if not (0 < min_chars <= max_chars and first_clause_chars > 0 and first_words >= 0):
            raise ValueError("need 0 < min_chars <= max_chars, first_clause_chars > 0 and first_words >= 0")
        self.min_chars = min_chars
        self.first_clause_chars = first_clause_chars
        self.first_words = first_words
        self.max_chars = max_chars
        self._buf = ""
        self._emitted = 0

    def feed(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while True:
            piece = self._next_piece()
            if piece is None:
                break
            if piece:
                out.append(piece)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        rest = _clean(self._buf)
        self._buf = ""
        if rest:
            self._emitted += 1
            return [rest]
        return []

    def _next_piece(self) -> str | None:
        buf = self._buf
        cut = self._sentence_cut(buf)
        if cut is None:
            m = _NEWLINE.search(buf)
            if m is not None:
                cut = m.end()
        if cut is None and self._emitted == 0:
            cut = self._clause_cut(buf, self.first_clause_chars)
            if cut is None and self.first_words:
                cut = self._words_cut(buf)
        if cut is None and len(buf) > self.max_chars:
            cut = self._clause_cut(buf, self.min_chars, limit=self.max_chars)
            if cut is None:
                space = buf.rfind(" ", self.min_chars, self.max_chars)
                cut = space + 1 if space > 0 else self.max_chars
        if cut is None:
            return None
        piece, self._buf = buf[:cut], buf[cut:]
        return _clean(piece)

    def _sentence_cut(self, buf: str) -> int | None:
        for m in _SENTENCE_END.finditer(buf):
            if m.group(1) == "." and _is_abbreviation(buf, m.start()):
                continue
            return m.end()
        # A sentence end at the very end of the buffer is taken at once rather than one token later, unless
        # the next token could still make it something else (a decimal, an abbreviation, an ellipsis).
        m = _EAGER_END.search(buf)
        if m is not None and (m.group(1) != "." or _eager_period_ok(buf, m.start(1))):
            return m.end()
        return None

    def _words_cut(self, buf: str) -> int | None:
        for n, m in enumerate(_WORD.finditer(buf), start=1):
            if n >= self.first_words and m.end() >= self.min_chars:
                return m.end()
        return None

    @staticmethod
    def _clause_cut(buf: str, min_len: int, limit: int | None = None) -> int | None:
        best = None
        for m in _CLAUSE_END.finditer(buf):
            if limit is not None and m.end() > limit:
                break
            if m.start() + 1 >= min_len:
                best = m.end()
                if limit is None:
                    break
        return best


def _is_abbreviation(buf: str, dot: int) -> bool:
    start = dot
    while start > 0 and (buf[start - 1].isalpha() or buf[start - 1] == "."):
        start -= 1
    word = buf[start:dot].lower()
    if word in _ABBREVIATIONS:
        return True
    # A single capital initial ("J. Smith") rarely ends a sentence.
    return len(word) == 1 and buf[start].isupper()


def _eager_period_ok(buf: str, dot: int) -> bool:
    before = buf[dot - 1]
    if before.isdigit():  # "3." may become "3.14"
        return False
    start = dot
    while start > 0 and buf[start - 1].isalpha():
        start -= 1
    word = buf[start:dot]
    if len(word) < 2 or (start > 0 and buf[start - 1] == "."):  # an initial, or "e.g" on its way
        return False
    return not _is_abbreviation(buf, dot)


def _clean(piece: str) -> str:
    return " ".join(piece.split())


_MARKDOWN = re.compile(r"(\*{1,3}|_{2,3}|`+|^#+\s*|^\s*[-*+]\s+|^\s*\d+\.\s+)", re.MULTILINE)
_URL = re.compile(r"https?://\S+")


def speakable(text: str) -> str:
    """What a voice should actually say: no markdown markers, emoji or raw URLs."""
    text = _URL.sub("link", text)
    text = _MARKDOWN.sub("", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("So", "Cs", "Co", "Cn"))
    return " ".join(text.split())
