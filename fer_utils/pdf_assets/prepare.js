(async (meta) => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await Promise.all(Array.from(document.images).map(i => i.complete ? null :
                    new Promise(done => { i.addEventListener('load', done); i.addEventListener('error', done); })));
  const article = document.querySelector('article.bd-article') || document.querySelector('[role=main]');
  article.querySelectorAll('button, .headerlink, .copybtn, .toggle-details, script, noscript, form, input')
         .forEach(e => e.remove());
  const root = article.querySelector(':scope > section');
  // Folded cells: the source never shows, folded outputs are unfolded.
  for (const fold of Array.from(article.querySelectorAll('details'))) {
    fold.querySelectorAll('.cell_input').forEach(e => e.remove());
    fold.querySelectorAll(':scope > summary').forEach(e => e.remove());
    if (!fold.textContent.trim() && !fold.querySelector('img, svg, mjx-container')) { fold.remove(); continue; }
    const unfolded = document.createElement('div');
    unfolded.className = 'pdf-unfolded';
    unfolded.append(...fold.childNodes);
    fold.replaceWith(unfolded);
  }
  // A table short enough for one page is kept on one page; a longer one breaks between rows, its header repeated.
  article.querySelectorAll('table').forEach(t => { if (t.rows.length <= 25) { t.classList.add('pdf-keep'); } });
  // singlehtml inlines the chapters where the root's toctree stood: move them after the root, one level up,
  // and leave a list of links in their place.
  const chapters = [];
  const wrapper = root.querySelector('.toctree-wrapper');
  if (wrapper) {
    const list = document.createElement('ul');
    for (const section of Array.from(wrapper.querySelectorAll(':scope > section'))) {
      const marker = section.previousElementSibling;
      const heading = section.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4');
      const shift = Number(heading.tagName[1]) - 1;
      for (const h of Array.from(section.querySelectorAll('h1, h2, h3, h4, h5, h6'))) {
        const renamed = document.createElement('h' + Math.max(1, Number(h.tagName[1]) - shift));
        renamed.append(...h.childNodes);
        for (const a of h.attributes) { renamed.setAttribute(a.name, a.value); }
        h.replaceWith(renamed);
      }
      section.classList.add('pdf-chapter');
      if (marker && marker.tagName === 'SPAN' && marker.id.startsWith('document-')) { section.prepend(marker); }
      chapters.push(section);
      const item = list.appendChild(document.createElement('li'));
      const link = item.appendChild(document.createElement('a'));
      link.href = '#' + section.id;
      link.textContent = section.querySelector(':scope > h1').textContent;
    }
    wrapper.replaceWith(list);
  }
  // Title page and contents page.
  const title = document.createElement('section');
  title.className = 'pdf-title';
  for (const [cls, text] of [['pdf-title__title', meta.title], ['pdf-title__course', meta.course],
                             ['pdf-title__author', meta.author], ['pdf-title__date', meta.date]]) {
    if (text) { const p = title.appendChild(document.createElement('p')); p.className = cls; p.textContent = text; }
  }
  const contents = document.createElement('nav');
  contents.className = 'pdf-contents';
  contents.appendChild(document.createElement('h1')).textContent = 'Contents';
  const entries = [];
  const addEntry = (heading, level, section) => {
    const line = contents.appendChild(document.createElement('a'));
    line.className = 'pdf-contents__line pdf-contents__level' + level;
    line.href = '#' + section.id;
    const text = heading.textContent.trim();
    line.appendChild(document.createElement('span')).textContent = text;
    line.appendChild(document.createElement('span')).className = 'pdf-contents__dots';
    const page = line.appendChild(document.createElement('span'));
    page.className = 'pdf-contents__page';
    page.textContent = '000';
    entries.push({text, level});
  };
  for (const section of [root, ...chapters]) {
    addEntry(section.querySelector(':scope > h1'), 1, section);
    for (const sub of Array.from(section.querySelectorAll(':scope > section'))) {
      const h = sub.querySelector(':scope > h2');
      if (h) { addEntry(h, 2, sub); }
    }
  }
  root.classList.add('pdf-chapter');
  const style = document.createElement('style');
  style.textContent = meta.css;
  document.head.appendChild(style);
  document.documentElement.dataset.theme = 'light';
  document.documentElement.dataset.mode = 'light';
  document.title = meta.title;
  document.body.replaceChildren(title, contents, root, ...chapters);
  document.body.className = 'pdf-body';
  await document.fonts.ready;
  return entries;
})
