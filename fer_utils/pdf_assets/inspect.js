(() => {
  const maths = Array.from(document.querySelectorAll('.math'));
  const chars = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || (parent.closest('mjx-container') && !parent.closest('mjx-utext'))) { continue; }
    if (!parent.getClientRects().length || getComputedStyle(parent).visibility === 'hidden') { continue; }
    for (const c of node.textContent) { if (c.codePointAt(0) > 0x7e) { chars.add(c); } }
  }
  return {
    maths: maths.length,
    figures: document.querySelectorAll('figure').length,
    tables: document.querySelectorAll('table').length,
    untypeset: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    mathErrors: document.querySelectorAll('mjx-merror').length,
    images: document.images.length,
    broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
    chars: Array.from(chars).sort(),
  };
})()
