// MathJax 3 configuration: pymdownx.arithmatex (generic mode, \( \) and \[ \]) on the Markdown
// pages, and $...$ / $$...$$ in the notebooks' Markdown cells (rendered by mkdocs-jupyter as
// .jp-RenderedMarkdown). Everything else is ignored, so a "$" in prose or code stays a "$".
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    // Any element with a class is skipped unless it is one of these (descendants without a class
    // inherit: the <p> of a notebook cell is searched, the prose of a page is not).
    ignoreHtmlClass: ".+",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown"
  }
};

document$.subscribe(() => {
  if (window.MathJax && MathJax.typesetPromise) {
    MathJax.startup.output.clearCache();
    MathJax.typesetClear();
    MathJax.texReset();
    MathJax.typesetPromise();
  }
});
