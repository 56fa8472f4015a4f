"""The "latest news" box as each page shows it: one copy of the box, one article more than it
shows, each page dropping its own item; and validators that a re-render of the box leaves alone."""

from __future__ import annotations

from renderer import contract
from renderer.latest_box import LATEST_BOX_SLOT, with_box
from renderer.rendered_page import RenderedPage
from tests.conftest import StackClients
from tests.helpers import get, unique_slug, wait_until
from tests.renderer.test_fronts import box
from tests.renderer.test_publish import article, put

SITE = "https://g1.example"


def a_box(*slugs: str, rendered_at: float = 100.0) -> RenderedPage:
    items = "".join(f'  <li><a href="{SITE}/noticia/{s}.ghtml">{s.upper()}</a></li>\n' for s in slugs)
    html = f'<aside class="latest" aria-labelledby="latest-title">\n<ol>\n{items}</ol>\n</aside>'.encode()
    return RenderedPage(200, html, '"9-box"', 50.0, "latest", rendered_at, version=9)


def page_of(slug: str, last_modified: float = 40.0) -> RenderedPage:
    html = b"<main>" + slug.encode() + b"</main>" + LATEST_BOX_SLOT + b"<footer></footer>"
    return RenderedPage(200, html, '"3-page"', last_modified, f"article-{slug}", 120.0, version=3)


def shown(page: RenderedPage) -> list[str]:
    return box(page.html.decode())


def url(slug: str) -> bytes:
    return f"{SITE}/noticia/{slug}.ghtml".encode()


def test_a_page_never_shows_itself_in_the_box_and_always_shows_as_many() -> None:
    six = a_box("a", "b", "c", "d", "e", "f")
    assert shown(with_box(page_of("c"), six, url("c"), shows=5)) == ["A", "B", "D", "E", "F"]
    assert shown(with_box(page_of("x"), six, url("x"), shows=5)) == ["A", "B", "C", "D", "E"]
    assert shown(with_box(page_of("a"), six, url("a"), shows=5)) == ["B", "C", "D", "E", "F"]
    # A site with fewer articles than the box shows: all of them but the page's own.
    three = a_box("a", "b", "c")
    assert shown(with_box(page_of("x"), three, url("x"), shows=5)) == ["A", "B", "C"]
    assert shown(with_box(page_of("b"), three, url("b"), shows=5)) == ["A", "C"]
    # A slug that is a prefix of another's is not mistaken for it.
    assert shown(with_box(page_of("a"), a_box("ab", "a", "c"), url("a"), shows=2)) == ["AB", "C"]


def test_last_modified_is_the_later_change_of_the_page_and_the_box_not_a_render() -> None:
    # The same box (one generation, its change at 50) rendered twice, at 100 and at 900: a page's
    # Last-Modified must not move, or an If-Modified-Since from before the re-render stops matching.
    first = with_box(page_of("c"), a_box("a", rendered_at=100.0), url("c"), shows=5)
    again = with_box(page_of("c"), a_box("a", rendered_at=900.0), url("c"), shows=5)
    assert first.last_modified == again.last_modified == 50.0
    assert with_box(page_of("c", last_modified=70.0), a_box("a"), url("c"), shows=5).last_modified == 70.0


def test_an_article_page_leaves_itself_out_of_its_box(stack: StackClients) -> None:
    # Dated after every other test's article: the newest, so first in every other page's box.
    newest, older = unique_slug("a-mais-nova"), unique_slug("a-anterior")
    assert put(stack.renderer, older, article("A anterior", published_at="2100-12-31T00:00:00Z")).status == 201
    assert put(stack.renderer, newest, article("A mais nova", published_at="2101-01-01T00:00:00Z")).status == 201
    elsewhere = wait_until(
        lambda: (b := box(get(stack.site, f"/noticia/{older}.ghtml").text))[:1] == ["A mais nova"] and b
    )
    assert len(elsewhere) == 5 and "A anterior" not in elsewhere
    own = box(get(stack.site, f"/noticia/{newest}.ghtml").text)
    assert own[:1] == ["A anterior"] and "A mais nova" not in own and len(own) == 5, own


def test_an_old_if_modified_since_still_matches_after_the_page_is_rendered_again(stack: StackClients) -> None:
    slug = unique_slug("revalidada")
    assert put(stack.renderer, slug, article("Revalidada")).status == 201
    path = f"/noticia/{slug}.ghtml"
    first = get(stack.renderer, path)
    last_modified = first.headers["Last-Modified"]
    # The box rendered again too: its record dropped, each process's next refresh (within
    # LATEST_BOX_REFRESH) renders it anew, at a later time than the page's first answer.
    box_key = contract.PAGE_KEY_PREFIX + contract.LATEST_BOX_CACHE_ID
    stack.redis.delete(box_key)
    wait_until(lambda: stack.redis.exists(box_key))
    stack.redis.delete(f"page:{slug}")  # the next read renders the page again from MongoDB
    again = get(stack.renderer, path, {"If-Modified-Since": last_modified})
    assert again.status == 304, (again.status, again.headers["X-Tier"], again.headers["Last-Modified"], last_modified)
    assert again.headers["X-Tier"] == "mongo"
