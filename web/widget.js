// The switchboard chat widget: include it with
//   <script src="https://YOUR-SWITCHBOARD/widget.js" async></script>
// on a site listed in `[chat] widget_origins`. It adds a "Chat with us" button that opens the
// chat page of the server it came from in a frame (the conversation lives there, kept across
// page loads by that server's origin).
(() => {
  "use strict";
  const me = document.currentScript;
  const origin = me ? new URL(me.src).origin : location.origin;
  if (document.getElementById("switchboard-chat-button")) return;
  const button = document.createElement("button");
  button.id = "switchboard-chat-button";
  button.type = "button";
  button.textContent = "Chat with us";
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-controls", "switchboard-chat-frame");
  Object.assign(button.style, {
    position: "fixed", right: "1rem", bottom: "1rem", zIndex: "2147483000",
    padding: "0.6rem 1rem", font: "inherit", borderRadius: "1.5rem",
  });
  let frame = null;
  button.addEventListener("click", () => {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.id = "switchboard-chat-frame";
      frame.title = "Chat with us";
      frame.src = `${origin}/chat`;
      Object.assign(frame.style, {
        position: "fixed", right: "1rem", bottom: "4rem", width: "min(24rem, 92vw)",
        height: "min(36rem, 80vh)", border: "1px solid #ccc", borderRadius: "0.6rem",
        background: "#fff", zIndex: "2147483000",
      });
      document.body.append(frame);
    } else {
      frame.hidden = !frame.hidden;
    }
    button.setAttribute("aria-expanded", String(!frame.hidden));
    button.textContent = frame.hidden ? "Chat with us" : "Close chat";
  });
  document.body.append(button);
})();
