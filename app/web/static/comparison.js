// The comparison page: a click on a thumbnail shows its difference image in a dialog (without
// scripts the link opens the image itself). The images were rendered once, by the comparison task.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const dialog = document.getElementById("cmp-diff");
  if (!dialog) return;
  const img = dialog.querySelector("img");
  const title = dialog.querySelector(".cmp-diff-title");
  document.querySelectorAll("a.cmp-thumb").forEach((link) => {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      img.src = link.getAttribute("href");
      title.textContent = link.dataset.title || "";
      dialog.showModal();
    });
  });
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
});
