"""Image checks are cached by content hash; the store keeps one copy per distinct image."""

from __future__ import annotations

from conftest import rgb_image

from impkit.data.images import ImageChecker, ImageStore


def test_unchanged_images_are_not_decoded_again(tmp_path):
    a = str(rgb_image(tmp_path / "a.png", colour=(1, 2, 3)))
    b = str(rgb_image(tmp_path / "b.png", size=(40, 20)))
    copy_of_a = str(rgb_image(tmp_path / "sub" / "a_copy.png", colour=(1, 2, 3)))
    cache = tmp_path / "cache.sqlite"
    with ImageChecker(cache, workers=2) as checker:
        facts = checker.check([a, b, copy_of_a, str(tmp_path / "missing.png")])
        assert checker.decoded == 3
    assert facts[a].status == "ok" and facts[a].sha256 == facts[copy_of_a].sha256
    assert (facts[b].width, facts[b].height) == (40, 20)
    assert facts[str(tmp_path / "missing.png")].status == "missing"

    with ImageChecker(cache, workers=1) as checker:  # a new run: decisions come from the cache
        again = checker.check([a, b, copy_of_a])
        assert (checker.decoded, checker.cache_hits) == (0, 3)
    assert again[b] == facts[b]

    rgb_image(tmp_path / "b.png", size=(50, 50))  # changed content: decoded again
    with ImageChecker(cache, workers=1) as checker:
        changed = checker.check([b])
        assert checker.decoded == 1 and changed[b].width == 50


def test_store_is_content_addressed(tmp_path):
    a = str(rgb_image(tmp_path / "a.png"))
    store = ImageStore(tmp_path / "store", "hardlink")
    rel = store.put(a, "ab" * 32)
    assert rel == f"ab/{'ab' * 32}.png"
    assert store.put(a, "ab" * 32) == rel and store.added == 1
    assert (tmp_path / "store" / rel).read_bytes() == (tmp_path / "a.png").read_bytes()
