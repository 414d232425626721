"""A small accessibility check over the DOM Chromium rendered (through WebDriver).

What it checks, on the page as shown (computed styles, so the CSS really applied):
  * `<html lang>` is set; the page has a title;
  * landmarks: exactly one `<main>`, named (aria-labelledby → an existing element); one `<h1>`;
  * every link and button has an accessible name; every `<img>` has an `alt` attribute;
    every visible form field has a label;
  * text contrast (WCAG 2.2 AA): every visible text node's colour against the first opaque
    background behind it, ≥ 4.5:1 (≥ 3:1 for large text: 24px, or 18.66px bold);
  * keyboard: every link and button can take focus.
It returns a list of problems; an empty list is a pass.
"""

from __future__ import annotations

import re

_COLLECT = r"""
const out = {lang: document.documentElement.getAttribute('lang') || '', title: document.title,
             mains: [], h1: document.querySelectorAll('h1').length, unnamed: [], imgs: [],
             fields: [], texts: [], unfocusable: []};
for (const m of document.querySelectorAll('main, [role=main]')) {
  const ref = m.getAttribute('aria-labelledby');
  out.mains.push({labelledby: ref, target: ref ? !!document.getElementById(ref) : false,
                  label: m.getAttribute('aria-label') || ''});
}
const visible = (el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
  return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
for (const el of document.querySelectorAll('a[href], button, [role=button]')) {
  const name = (el.getAttribute('aria-label') || el.textContent || '').trim();
  if (!name) out.unnamed.push(el.outerHTML.slice(0, 120));
  el.focus();
  if (visible(el) && document.activeElement !== el) out.unfocusable.push(el.outerHTML.slice(0, 120));
}
if (document.activeElement) document.activeElement.blur();
for (const img of document.querySelectorAll('img')) out.imgs.push({alt: img.hasAttribute('alt'), src: img.src.slice(0, 40)});
for (const f of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  if (!visible(f)) continue;
  const labelled = (f.labels && f.labels.length) || f.getAttribute('aria-label') || f.getAttribute('aria-labelledby');
  if (!labelled) out.fields.push(f.outerHTML.slice(0, 120));
}
const bgOf = (el) => {
  for (let e = el; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor;
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (m) { const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
             if (p.length < 4 || p[3] > 0.99) return c; }
  }
  return 'rgb(255, 255, 255)';
};
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const text = n.textContent.trim();
  const el = n.parentElement;
  if (!text || !el || !visible(el) || el.closest('[aria-hidden=true]')) continue;
  const s = getComputedStyle(el);
  out.texts.push({text: text.slice(0, 40), color: s.color, bg: bgOf(el),
                  size: parseFloat(s.fontSize), weight: parseInt(s.fontWeight, 10) || 400});
}
return out;
"""


def _rgb(css: str) -> tuple[float, float, float]:
    m = re.match(r"rgba?\(([^)]+)\)", css)
    if not m:
        raise ValueError(f"unexpected colour {css!r}")
    parts = [float(p) for p in re.split(r"[ ,/]+", m.group(1).strip()) if p]
    return parts[0], parts[1], parts[2]


def luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = rgb
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    la, lb = luminance(_rgb(a)), luminance(_rgb(b))
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def check(driver) -> list[str]:
    """Problems found on the page `driver` shows (empty: none)."""
    d = driver.execute_script(_COLLECT)
    problems = []
    if not d["lang"]:
        problems.append("<html> has no lang")
    if not d["title"].strip():
        problems.append("no <title>")
    if len(d["mains"]) != 1:
        problems.append(f"expected one <main> landmark, found {len(d['mains'])}")
    for m in d["mains"]:
        if not (m["target"] or m["label"]):
            problems.append(f"<main> has no accessible name: {m}")
    if d["h1"] != 1:
        problems.append(f"expected one <h1>, found {d['h1']}")
    problems += [f"link/button without a name: {u}" for u in d["unnamed"]]
    problems += [f"cannot take keyboard focus: {u}" for u in d["unfocusable"]]
    problems += [f"<img> without alt: {i['src']}" for i in d["imgs"] if not i["alt"]]
    problems += [f"form field without a label: {f}" for f in d["fields"]]
    if not d["texts"]:
        problems.append("no visible text")
    for t in d["texts"]:
        ratio = contrast(t["color"], t["bg"])
        large = t["size"] >= 24 or (t["size"] >= 18.66 and t["weight"] >= 700)
        need = 3.0 if large else 4.5
        if ratio < need:
            problems.append(
                f"contrast {ratio:.2f} < {need} for {t['text']!r} ({t['color']} on {t['bg']})"
            )
    return problems
