"""Switches for each step of the extraction sequence.

Production uses the defaults; the ablation bench turns steps off one at a time to show what each buys.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class ExtractOptions:
    # Turn embedded tweets/quotes into plain blockquotes so the extractor keeps them (news bodies quote them).
    keep_embedded_posts: bool = True
    # Drop elements the page itself hides (hidden attribute, display:none) before extraction.
    drop_hidden: bool = True
    # Turn layout tables (tables holding headings, paragraphs, forms or other tables) into divs, so the
    # extractor finds the article column instead of returning the whole page as one table.
    unwrap_layout_tables: bool = True
    # When the fast pass looks truncated, run trafilatura's readability/justext comparison and choose between
    # (or merge) the two candidates instead of taking the fast one blindly.
    choose_candidate: bool = True
    # When the fast pass came back as trafilatura's last resort (the article's whole text as one
    # paragraph), cut it into the visual lines of the page's <article> it was made of.
    structure_dumps: bool = True
    # Put back the standfirst (the page's visible copy of its description) when it sits outside the body
    # container the extractor took.
    restore_standfirst: bool = True
    # Look for the standfirst under every description the page declares (meta, og, twitter, JSON-LD), not
    # only the one metadata keeps: sources disagree, and the visible standfirst may be any of them.
    standfirst_any_description: bool = True
    # Accept a standfirst that starts like a description and holds nearly all its words (a description
    # cut or lightly reworded from the visible standfirst).
    standfirst_reworded: bool = True
    # When no description is shown, take the standfirst the page's schema.org microdata declares (the
    # element with itemprop="description" inside the Article's itemscope).
    standfirst_microdata: bool = True
    # Put back in-body headings and lists the extractor dropped between two paragraphs it kept.
    restore_gaps: bool = True
    # Put back the parts of a body the CMS cut into several containers of one class (around ad rows and
    # pictures) that the extractor left out: before, between or after the parts it kept.
    restore_continuations: bool = True
    # Remove a repeated headline / standfirst at the top of the body.
    strip_title_and_standfirst: bool = True
    # Remove "related stories", newsletter prompts, share/follow calls and similar blocks.
    strip_boilerplate: bool = True
    # Remove link-only blocks (lists of headlines) from the body.
    strip_link_blocks: bool = True
    # Remove short blocks repeated inside another block (pull quotes that restate a sentence of the body).
    strip_pull_quotes: bool = True

    def without(self, name: str) -> ExtractOptions:
        """A copy with one step switched off (for the ablation table)."""
        if name not in {f.name for f in fields(self)}:
            raise ValueError(f"unknown extraction step: {name}")
        return replace(self, **{name: False})


DEFAULT_OPTIONS = ExtractOptions()
