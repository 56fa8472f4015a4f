"""The sample articles' lead images: one illustration per section, drawn here so that the local
stack shows a newspaper without reaching any image host.

Drawn by this script, dedicated to the public domain (CC0 1.0). Written to
``renderer/static/img/<section>.jpg`` (the renderer serves them at ``/static/img/``); run again with
``python -m devstack.sample_images`` after changing a drawing. Needs Pillow (a test dependency).
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "renderer" / "static" / "img"
SIZE = WIDTH, HEIGHT = 1200, 675
Color = tuple[int, int, int]


def gradient(top: Color, bottom: Color) -> Image.Image:
    image = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(image)
    for y in range(HEIGHT):
        t = y / (HEIGHT - 1)
        draw.line([(0, y), (WIDTH, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return image


def rio(rnd: random.Random) -> Image.Image:
    image = gradient((250, 170, 90), (255, 225, 180))
    draw = ImageDraw.Draw(image)
    draw.ellipse([820, 140, 960, 280], fill=(255, 240, 200))
    draw.polygon([(0, 470), (180, 300), (330, 420), (520, 200), (640, 330), (760, 470)], fill=(60, 70, 90))
    draw.polygon([(700, 470), (900, 260), (1000, 300), (1200, 470)], fill=(80, 90, 110))
    draw.rectangle([0, 470, WIDTH, HEIGHT], fill=(30, 90, 140))
    for y in range(490, HEIGHT, 22):
        for x in range(rnd.randrange(0, 60), WIDTH, 140):
            draw.line([(x, y), (x + 50, y)], fill=(120, 170, 210), width=3)
    return image


def sao_paulo(rnd: random.Random) -> Image.Image:
    image = gradient((90, 100, 115), (160, 170, 180))
    draw = ImageDraw.Draw(image)
    x = 0
    while x < WIDTH:
        w, h = rnd.randrange(60, 140), rnd.randrange(180, 480)
        draw.rectangle([x, HEIGHT - h, x + w, HEIGHT], fill=(45 + rnd.randrange(30),) * 3)
        for wy in range(HEIGHT - h + 20, HEIGHT - 20, 34):
            for wx in range(x + 12, x + w - 16, 26):
                if rnd.random() < 0.4:
                    draw.rectangle([wx, wy, wx + 10, wy + 14], fill=(240, 210, 120))
        x += w + rnd.randrange(4, 20)
    for _ in range(400):
        rx, ry = rnd.randrange(WIDTH), rnd.randrange(HEIGHT)
        draw.line([(rx, ry), (rx - 8, ry + 30)], fill=(200, 210, 225), width=2)
    return image


def futebol(rnd: random.Random) -> Image.Image:
    image = Image.new("RGB", SIZE, (40, 130, 60))
    draw = ImageDraw.Draw(image)
    for n in range(0, WIDTH, 100):
        draw.rectangle([n, 0, n + 50, HEIGHT], fill=(50, 145, 70))
    white = (245, 245, 245)
    draw.rectangle([40, 40, WIDTH - 40, HEIGHT - 40], outline=white, width=6)
    draw.line([(WIDTH // 2, 40), (WIDTH // 2, HEIGHT - 40)], fill=white, width=6)
    draw.ellipse([WIDTH // 2 - 110, HEIGHT // 2 - 110, WIDTH // 2 + 110, HEIGHT // 2 + 110], outline=white, width=6)
    draw.rectangle([40, HEIGHT // 2 - 150, 220, HEIGHT // 2 + 150], outline=white, width=6)
    draw.rectangle([WIDTH - 220, HEIGHT // 2 - 150, WIDTH - 40, HEIGHT // 2 + 150], outline=white, width=6)
    draw.ellipse([760, 380, 820, 440], fill=white, outline=(30, 30, 30), width=3)
    return image


def economia(rnd: random.Random) -> Image.Image:
    image = gradient((18, 28, 48), (30, 45, 75))
    draw = ImageDraw.Draw(image)
    for y in range(100, HEIGHT - 60, 80):
        draw.line([(80, y), (WIDTH - 60, y)], fill=(50, 65, 95), width=2)
    level, points = 420.0, []
    for x in range(100, WIDTH - 80, 70):
        level += rnd.uniform(-55, 40)
        level = min(max(level, 140), 560)
        draw.rectangle([x, HEIGHT - 60 - (560 - level) // 2, x + 36, HEIGHT - 60], fill=(60, 110, 170))
        points.append((x + 18, level))
    draw.line(points, fill=(90, 220, 130), width=7)
    return image


def saude(rnd: random.Random) -> Image.Image:
    image = gradient((200, 230, 245), (235, 248, 252))
    draw = ImageDraw.Draw(image)
    cx, cy = WIDTH // 2, HEIGHT // 2
    draw.ellipse([cx - 230, cy - 230, cx + 230, cy + 230], fill=(255, 255, 255))
    draw.rectangle([cx - 60, cy - 170, cx + 60, cy + 170], fill=(0, 150, 120))
    draw.rectangle([cx - 170, cy - 60, cx + 170, cy + 60], fill=(0, 150, 120))
    return image


def pop_arte(rnd: random.Random) -> Image.Image:
    image = gradient((70, 20, 90), (150, 40, 110))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 200, WIDTH, 475], fill=(20, 20, 20))
    for x in range(10, WIDTH, 60):
        draw.rectangle([x, 215, x + 30, 240], fill=(230, 230, 230))
        draw.rectangle([x, 435, x + 30, 460], fill=(230, 230, 230))
    frames = ((240, 180, 60), (80, 190, 220), (240, 90, 120), (160, 230, 120))
    for n, x in enumerate(range(40, WIDTH, 290)):
        draw.rectangle([x, 260, x + 250, 415], fill=frames[n % 4])
    return image


def tecnologia(rnd: random.Random) -> Image.Image:
    image = gradient((10, 25, 60), (20, 55, 110))
    draw = ImageDraw.Draw(image)
    nodes = [(rnd.randrange(60, WIDTH - 60), rnd.randrange(60, HEIGHT - 60)) for _ in range(28)]
    for a, b in zip(nodes, nodes[1:], strict=False):
        draw.line([a, (b[0], a[1]), b], fill=(70, 170, 230), width=4)
    for x, y in nodes:
        draw.ellipse([x - 12, y - 12, x + 12, y + 12], fill=(150, 230, 255))
    return image


def educacao(rnd: random.Random) -> Image.Image:
    image = gradient((245, 235, 215), (225, 205, 175))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 560, WIDTH, HEIGHT], fill=(120, 80, 50))
    y = 560
    for n in range(7):
        h, w = rnd.randrange(40, 70), rnd.randrange(420, 620)
        x = WIDTH // 2 - w // 2 + rnd.randrange(-40, 40)
        color = ((180, 50, 50), (40, 90, 160), (50, 130, 80), (200, 150, 40), (90, 60, 140))[n % 5]
        draw.rectangle([x, y - h, x + w, y], fill=color, outline=(40, 30, 20), width=3)
        y -= h
    return image


def meio_ambiente(rnd: random.Random) -> Image.Image:
    image = gradient((255, 120, 40), (255, 205, 120))
    draw = ImageDraw.Draw(image)
    draw.ellipse([470, 90, 730, 350], fill=(255, 245, 200))
    for n in range(12):
        angle = n * math.pi / 6
        inner = (600 + 160 * math.cos(angle), 220 + 160 * math.sin(angle))
        outer = (600 + 220 * math.cos(angle), 220 + 220 * math.sin(angle))
        draw.line([inner, outer], fill=(255, 240, 190), width=8)
    draw.rectangle([0, 480, WIDTH, HEIGHT], fill=(170, 110, 60))
    for _ in range(60):
        x, y = rnd.randrange(WIDTH), rnd.randrange(500, HEIGHT)
        draw.line([(x, y), (x + rnd.randrange(20, 90), y + rnd.randrange(-8, 8))], fill=(120, 70, 35), width=3)
    return image


DRAWINGS: dict[str, Callable[[random.Random], Image.Image]] = {
    "rio": rio,
    "sao-paulo": sao_paulo,
    "futebol": futebol,
    "economia": economia,
    "saude": saude,
    "pop-arte": pop_arte,
    "tecnologia": tecnologia,
    "educacao": educacao,
    "meio-ambiente": meio_ambiente,
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for section, draw in DRAWINGS.items():
        path = OUT / f"{section}.jpg"
        draw(random.Random(section)).save(path, "JPEG", quality=72, optimize=True, progressive=True)
        print(path, path.stat().st_size)


if __name__ == "__main__":
    main()
