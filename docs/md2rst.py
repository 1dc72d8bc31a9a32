"""Markdown (CommonMark + tables + ``$`` math) to reStructuredText, for the documentation build.

The tutorials' prose and ``benchmarks/RESULTS.md`` are Markdown, which reads well in Jupyter
and on a code host; Sphinx and sphinx-gallery read reStructuredText. This converts the subset
those files use -- headings, paragraphs, emphasis, inline code, links, lists, code blocks,
tables, ``$...$`` and ``$$...$$`` math -- through markdown-it-py's token stream (in the
``docs`` extra), so that no Markdown parser has to be written by hand.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

__all__ = ["convert", "tutorial_to_gallery"]

_PARSER = MarkdownIt("commonmark").enable("table")
_UNDERLINES = '=-~^"'
_MATH_BLOCK = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)
_MATH_INLINE = re.compile(r"(?<![\\$])\$(?!\$)([^$\n]+?)\$")
_SPECIAL = re.compile(r"([\\*`_|])")


def _escape(text):
    return _SPECIAL.sub(r"\\\1", text)


class _Converter:
    def __init__(self, link_map):
        self.link_map = link_map or (lambda url: url)
        self.math = []

    # -- math is taken out before Markdown sees it (backslashes, underscores) ----------------
    def protect(self, text):
        def block(m):
            self.math.append(("block", m.group(1).strip()))
            return f"\n\nMATHxx{len(self.math) - 1}xx\n\n"

        def inline(m):
            self.math.append(("inline", m.group(1).strip()))
            return f"MATHxx{len(self.math) - 1}xx"

        return _MATH_INLINE.sub(inline, _MATH_BLOCK.sub(block, text))

    def restore_inline(self, text):
        def sub(m):
            kind, tex = self.math[int(m.group(1))]
            return f":math:`{tex}`" if kind == "inline" else f"\n\n.. math::\n\n   {tex}\n\n"

        return re.sub(r"MATHxx(\d+)xx", sub, text)

    # -- inline ----------------------------------------------------------------------------
    def inline(self, tokens):
        parts = []  # (is_markup, text)
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            kind = tok.type
            if kind == "text":
                parts.append((False, _escape(tok.content)))
            elif kind in ("softbreak", "hardbreak"):
                parts.append((False, " "))
            elif kind == "code_inline":
                parts.append((True, f"``{tok.content}``"))
            elif kind in ("strong_open", "em_open", "link_open"):
                close = kind.replace("_open", "_close")
                depth, j = 1, i + 1
                while depth:
                    depth += {kind: 1, close: -1}.get(tokens[j].type, 0)
                    j += 1
                inner = tokens[i + 1 : j - 1]
                text = "".join(
                    t.content or (" " if t.type.endswith("break") else "") for t in inner
                )
                if kind == "strong_open":
                    parts.append((True, f"**{_escape(text)}**"))
                elif kind == "em_open":
                    parts.append((True, f"*{_escape(text)}*"))
                else:
                    target = self.link_map(tok.attrGet("href"))
                    if target is None:  # a link that means nothing outside the source tree
                        parts.append((False, self.inline(inner)))
                    elif target.startswith(":"):
                        parts.append((True, target.format(text=text)))
                    else:
                        parts.append((True, f"`{text} <{target}>`__"))
                i = j
                continue
            elif kind == "image":
                parts.append((False, _escape(tok.content)))
            else:
                parts.append((False, _escape(tok.content)))
            i += 1
        out = ""
        for k, (markup, text) in enumerate(parts):
            if markup and out and not out[-1].isspace() and out[-1] not in "(['\"-/":
                out += "\\ "
            out += text
            nxt = parts[k + 1][1] if k + 1 < len(parts) else ""
            if markup and nxt and not nxt[0].isspace() and nxt[0] not in ".,;:!?)]'\"-/":
                out += "\\ "
        return self.restore_inline(out)

    # -- blocks ----------------------------------------------------------------------------
    def blocks(self, tokens, indent=""):
        lines = []
        i = 0

        def emit(text_lines):
            if lines and lines[-1] != "":
                lines.append("")
            lines.extend(text_lines)

        while i < len(tokens):
            tok = tokens[i]
            kind = tok.type
            if kind == "heading_open":
                level = int(tok.tag[1])
                title = self.inline(tokens[i + 1].children)
                emit([title, _UNDERLINES[level - 1] * max(len(title), 3)])
                i += 3
            elif kind == "paragraph_open":
                text = self.inline(tokens[i + 1].children)
                emit(text.strip("\n").split("\n"))
                i += 3
            elif kind in ("fence", "code_block"):
                lang = (tok.info or "").strip() or "text"
                body = tok.content.rstrip("\n").split("\n")
                emit([f".. code-block:: {lang}", ""] + ["   " + line for line in body])
                i += 1
            elif kind in ("bullet_list_open", "ordered_list_open"):
                close = kind.replace("_open", "_close")
                depth, j = 1, i + 1
                while depth:
                    depth += {kind: 1, close: -1}.get(tokens[j].type, 0)
                    j += 1
                emit(self.list_(tokens[i + 1 : j - 1], ordered=kind.startswith("ordered")))
                i = j
            elif kind == "table_open":
                j = i
                while tokens[j].type != "table_close":
                    j += 1
                emit(self.table(tokens[i:j]))
                i = j + 1
            elif kind == "hr":
                emit(["----"])
                i += 1
            elif kind == "blockquote_open":
                j = i + 1
                depth = 1
                while depth:
                    depth += {"blockquote_open": 1, "blockquote_close": -1}.get(tokens[j].type, 0)
                    j += 1
                emit(["   " + line if line else "" for line in self.blocks(tokens[i + 1 : j - 1])])
                i = j
            else:
                i += 1
        return [indent + line if line else "" for line in lines]

    def list_(self, tokens, ordered):
        items, i = [], 0
        while i < len(tokens):
            if tokens[i].type == "list_item_open":
                depth, j = 1, i + 1
                while depth:
                    depth += {"list_item_open": 1, "list_item_close": -1}.get(tokens[j].type, 0)
                    j += 1
                items.append(tokens[i + 1 : j - 1])
                i = j
            else:
                i += 1
        out = []
        for n, item in enumerate(items, start=1):
            mark = f"{n}. " if ordered else "* "
            body = self.blocks(item)
            while body and body[0] == "":
                body.pop(0)
            pad = " " * len(mark)
            out.append(mark + body[0])
            out.extend(pad + line if line else "" for line in body[1:])
        return out

    def table(self, tokens):
        rows, row = [], None
        header_rows = 0
        for k, tok in enumerate(tokens):
            if tok.type == "tr_open":
                row = []
            elif tok.type in ("th_open", "td_open"):
                row.append(
                    self.inline(tokens[k + 1].children) if tokens[k + 1].type == "inline" else ""
                )
            elif tok.type == "tr_close":
                rows.append(row)
            elif tok.type == "thead_close":
                header_rows = len(rows)
        out = [".. list-table::", f"   :header-rows: {header_rows}", ""]
        for row in rows:
            for c, cell in enumerate(row):
                out.append(("   * - " if c == 0 else "     - ") + (cell or "\\ "))
        return out


def convert(markdown, link_map=None):
    """Markdown text -> reStructuredText text.

    ``link_map(url)`` returns the rst target for a link: a URL, a role template such as
    ``":ref:`{text} <label>`"``, or None to keep only the link's text.
    """
    conv = _Converter(link_map)
    tokens = _PARSER.parse(conv.protect(markdown))
    return "\n".join(conv.blocks(tokens)).strip("\n") + "\n"


def _comment(text):
    return "\n".join(("# " + line).rstrip() for line in text.split("\n"))


def tutorial_to_gallery(source, link_map=None):
    """A jupytext percent script -> a sphinx-gallery script with the same cells.

    The first Markdown cell becomes the module docstring (the page title), later Markdown
    cells become ``# %%`` text blocks in rst, code cells stay as they are.
    """
    cells, kind, buf = [], None, []
    lines = source.split("\n")
    if lines and lines[0].startswith("# ---"):  # jupytext's header
        end = next(k for k in range(1, len(lines)) if lines[k].startswith("# ---"))
        lines = lines[end + 1 :]
    for line in lines:
        if line.startswith("# %%"):
            if kind is not None:
                cells.append((kind, buf))
            kind, buf = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            buf.append(line)
    if kind is not None:
        cells.append((kind, buf))

    def markdown_of(buf):
        return "\n".join(
            line[2:] if line.startswith("# ") else line.lstrip("#") for line in buf
        ).strip("\n")

    out = []
    first, *rest = cells
    if first[0] != "markdown":
        raise ValueError("a tutorial must start with a Markdown cell (its title)")
    doc = convert(markdown_of(first[1]), link_map)
    out.append('r"""\n' + doc.replace('"""', r"\"\"\"") + '"""\n')
    for kind, buf in rest:
        if kind == "markdown":
            out.append("# %%\n" + _comment(convert(markdown_of(buf), link_map).rstrip("\n")))
        else:
            code = "\n".join(buf).strip("\n")
            if code:
                out.append("# %%\n\n" + code)
    return "\n\n".join(out) + "\n"
