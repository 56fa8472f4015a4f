"""The newsroom's sections: each slug's display name, in the order the navigation shows them.

Declared once (``SITE_SECTIONS``) and used wherever a section is shown: the kicker, a front's
heading, the home's navigation, titles, descriptions, JSON-LD and feeds. A publish to a section
that is not declared is refused (``renderer.articles``): a typo would otherwise open a front, a
feed and a sitemap entry nobody navigates to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from renderer import contract

# g1's sections, in its navigation's order; SITE_SECTIONS replaces them.
DEFAULT_SECTIONS = (
    "rio=Rio de Janeiro",
    "sao-paulo=São Paulo",
    "politica=Política",
    "economia=Economia",
    "mundo=Mundo",
    "educacao=Educação",
    "saude=Saúde",
    "ciencia=Ciência",
    "meio-ambiente=Meio Ambiente",
    "tecnologia=Tecnologia",
    "futebol=Futebol",
    "pop-arte=Pop & Arte",
)


@dataclass(frozen=True)
class Sections:
    """Slug → display name, in navigation order (a dict keeps the order it was given)."""

    names: dict[str, str]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Sections:
        """Sections from ``slug=Name`` entries, or ``ValueError`` saying which entry is wrong."""
        names: dict[str, str] = {}
        for entry in entries:
            slug, sep, name = (part.strip() for part in entry.partition("="))
            if not sep or not name:
                raise ValueError(f"SITE_SECTIONS entry {entry!r} is not slug=Name")
            if not contract.is_valid_section(slug):
                raise ValueError(f"SITE_SECTIONS entry {entry!r}: {slug!r} can't name a section front")
            if slug in names:
                raise ValueError(f"SITE_SECTIONS names {slug!r} twice")
            names[slug] = name
        if not names:
            raise ValueError("SITE_SECTIONS is empty: no article could be published")
        return cls(names)

    def __contains__(self, slug: object) -> bool:
        return slug in self.names

    def name(self, slug: str) -> str:
        """What readers see for ``slug``. An article stored in a section that is no longer declared
        (written before the registry, or the section retired) still shows: its slug, spelled out."""
        return self.names.get(slug) or slug.replace("-", " ").capitalize()

    def in_order(self, slugs: Iterable[str]) -> list[str]:
        """``slugs`` without repeats, in the navigation's order; undeclared ones last, by slug."""
        rank = {slug: n for n, slug in enumerate(self.names)}
        return sorted(set(slugs), key=lambda slug: (rank.get(slug, len(rank)), slug))


G1_SECTIONS = Sections.parse(DEFAULT_SECTIONS)
