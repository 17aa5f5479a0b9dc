// Progressive enhancement only: every flow works without this file.
// Copies a shown-once secret (consumer token, invitation link) to the clipboard on click.
document.addEventListener("click", (event) => {
  const target = event.target;
  if (!(target instanceof HTMLElement)) return;
  if (!target.matches("#consumer-token, #totp-secret")) return;
  if (navigator.clipboard) navigator.clipboard.writeText(target.textContent || "").catch(() => {});
});
