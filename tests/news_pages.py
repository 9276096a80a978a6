"""News pages written around known article text, in three layouts shaped like Vietnamese outlets.

Used by the web tests (a local news site) and by bench/extraction.py (which scores extractors against
the text the page was built from). Every page carries what real pages carry around an article:
navigation, a breadcrumb, related links, "most read" lists, comments, ads and scripts.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from index.cleaning import clean_article
from index.loading import load_documents

LAYOUTS = ("bao-dien-tu", "cong-thong-tin", "tap-chi")
SITE_NAME = "Báo Ấp Bắc điện tử"
_NAV = ["Trang chủ", "Thời sự", "Chính trị", "Kinh tế", "Xã hội", "Pháp luật", "Văn hóa", "Thể thao", "Video"]
_RELATED = [
    "Tiền Giang: Nông dân phấn khởi vì lúa được mùa, được giá",
    "Khánh thành cầu nông thôn mới tại huyện Chợ Gạo",
    "Ra quân chiến dịch tình nguyện mùa hè xanh năm nay",
    "Hội nghị tổng kết công tác dân vận của hệ thống chính trị",
]
_COMMENTS = [
    ("Minh Tâm", "Bài viết rất hay, cảm ơn phóng viên đã phản ánh kịp thời."),
    ("Nguyễn Văn Hùng", "Mong các cấp tiếp tục quan tâm hơn nữa đến đời sống bà con vùng sâu."),
]


@dataclass(frozen=True)
class NewsArticle:
    """The truth a page is built from: headline, ISO date and body paragraphs."""

    slug: str
    title: str
    date: str
    paragraphs: list[str]

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)


def bundled_articles(corpus: Path) -> list[NewsArticle]:
    """The bundled articles, cleaned as the indexer cleans them (their title, date and body)."""
    documents, _ = load_documents([corpus])
    articles = []
    for number, document in enumerate(sorted(documents, key=lambda d: d.doc_id)):
        article = clean_article(document)
        paragraphs = [p.strip() for p in article.text.split("\n\n") if p.strip()]
        articles.append(NewsArticle(f"bai-{number}", article.title, article.date or "2023-01-01", paragraphs))
    return articles


def _nav() -> str:
    items = "".join(f'<li><a href="/{i}.html">{html.escape(name)}</a></li>' for i, name in enumerate(_NAV))
    return f'<nav class="menu"><ul>{items}</ul></nav>'


def _related(heading: str = "Tin liên quan") -> str:
    links = "".join(f'<li><a href="/tin/{i}.html">{html.escape(t)}</a></li>' for i, t in enumerate(_RELATED))
    return f'<div class="related"><h3>{heading}</h3><ul>{links}</ul></div>'


def _comments() -> str:
    items = "".join(f'<div class="comment"><b>{html.escape(who)}</b><p>{html.escape(what)}</p></div>'
                    for who, what in _COMMENTS)
    return f'<div class="comments"><h3>Ý kiến bạn đọc (2)</h3>{items}<form><textarea></textarea>' \
           f'<button>Gửi bình luận</button></form></div>'


def _ad(slot: int) -> str:
    return (f'<div class="ads" id="ad-{slot}"><span>Quảng cáo</span><a href="/qc/{slot}">Mua sắm ưu đãi lớn '
            f'cuối tuần, giảm giá đến 50% cho mọi đơn hàng</a></div><script>window.ads=window.ads||[];'
            f'ads.push({{slot:{slot}}});</script>')


def _dmy(date: str) -> str:
    year, month, day = date.split("-")
    return f"{day}/{month}/{year}"


def render(article: NewsArticle, layout: str, url: str, *, lang: str = "vi", canonical: str | None = None) -> str:
    """The article as an HTML page in `layout`; `canonical` (default `url`) goes in `<link rel=canonical>`."""
    canonical = canonical or url
    body = "".join(f"<p>{html.escape(p)}</p>" for p in article.paragraphs)
    half = max(1, len(article.paragraphs) // 2)
    first = "".join(f"<p>{html.escape(p)}</p>" for p in article.paragraphs[:half])
    second = "".join(f"<p>{html.escape(p)}</p>" for p in article.paragraphs[half:])
    title = html.escape(article.title)
    if layout == "bao-dien-tu":  # a daily's site: meta tags, <article> holding related links and comments
        head = (f'<title>{title} - {SITE_NAME}</title><link rel="canonical" href="{html.escape(canonical)}">'
                f'<meta property="og:site_name" content="{SITE_NAME}"><meta property="og:title" content="{title}">'
                f'<meta property="article:published_time" content="{article.date}T08:30:00+07:00">')
        page = (f'<header class="top"><a href="/" class="logo">{SITE_NAME}</a>{_nav()}</header>'
                f'<div class="breadcrumb"><a href="/">Trang chủ</a> › <a href="/thoi-su.html">Thời sự</a></div>'
                f'<div class="container"><article class="detail"><h1 class="title-detail">{title}</h1>'
                f'<span class="date">{_dmy(article.date)} 08:30 (GMT+7)</span>'
                f'<div class="fck_detail">{first}{_ad(1)}{second}</div>{_related()}{_comments()}</article>'
                f'<aside class="sidebar">{_related("Đọc nhiều")}{_ad(2)}</aside></div>'
                f'<footer>© {SITE_NAME}. Giấy phép số 123/GP-BTTTT. Địa chỉ: Mỹ Tho, Tiền Giang.</footer>')
    elif layout == "cong-thong-tin":  # a province's portal: tables, no meta date, the date as text
        head = (f'<title>{title} | Cổng thông tin điện tử tỉnh Tiền Giang</title>'
                f'<link rel="canonical" href="{html.escape(canonical)}">')
        page = (f'<div id="banner"><img src="/banner.png" alt="Cổng thông tin điện tử"></div>{_nav()}'
                f'<table class="layout"><tr><td class="left">{_related("Tin mới")}</td><td class="main">'
                f'<div class="news-detail"><h2 class="news-title">{title}</h2>'
                f'<div class="news-date">Cập nhật lúc: 08:30, {_dmy(article.date)}</div>'
                f'<div class="news-content">{body}</div><div class="print"><a href="#">In trang</a> | '
                f'<a href="#">Gửi email</a></div>{_related("Các tin khác")}</div></td>'
                f'<td class="right">{_ad(3)}</td></tr></table>'
                '<div class="footer">Cơ quan chủ quản: UBND tỉnh Tiền Giang. Ghi rõ nguồn khi phát hành lại.</div>')
    elif layout == "tap-chi":  # a magazine: <main>, <time>, JSON-LD, a lead paragraph, comments after
        ld = json.dumps({"@context": "https://schema.org", "@type": "NewsArticle", "headline": article.title,
                         "datePublished": f"{article.date}T08:30:00+07:00",
                         "publisher": {"@type": "Organization", "name": SITE_NAME}}, ensure_ascii=False)
        head = (f'<title>{title}</title><link rel="canonical" href="{html.escape(canonical)}">'
                f'<script type="application/ld+json">{ld}</script>')
        lead, rest = article.paragraphs[0], article.paragraphs[1:]
        page = (f'{_nav()}<main><header><h1>{title}</h1><p class="meta">'
                f'<time datetime="{article.date}">{_dmy(article.date)}</time> · Chuyên mục Xã hội</p></header>'
                f'<p class="sapo"><strong>{html.escape(lead)}</strong></p>'
                f'<div class="entry-content">{"".join(f"<p>{html.escape(p)}</p>" for p in rest)}</div>'
                f'<div class="share">Chia sẻ: Facebook · Zalo · Twitter</div></main>'
                f'<section class="more">{_related("Có thể bạn quan tâm")}</section>{_comments()}{_ad(4)}'
                '<footer>Tạp chí điện tử. Bản quyền thuộc về tòa soạn.</footer>')
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">{head}'
            f'<script src="/js/analytics.js"></script><style>.ads{{float:right}}</style></head>'
            f'<body>{page}<script>console.log("tracking")</script></body></html>')
