((pages) => { document.querySelectorAll('.pdf-contents__page').forEach((e, i) => e.textContent = pages[i]);
                        return true; })
