/*
 * The queue dashboard refreshes itself: every few seconds it fetches its own body (?fragment=1) and
 * swaps it in, keeping focus and opened details where they were. It waits while the tab is hidden, while
 * the operator has paused it, and while focus rests on something it could not give back after the swap.
 * Without this script the page still works, with its "Refresh" link. An external file, so a strict
 * Content-Security-Policy can allow it.
 */
"use strict";
(function () {
    const root = document.getElementById("tq-dashboard");
    const status = document.getElementById("tq-updated");
    const pause = document.getElementById("tq-pause");
    if (!root || !status || !window.fetch) {
        return;
    }
    const interval = Math.max(Number(root.dataset.refreshSeconds) || 5, 1) * 1000;
    let timer = null;
    let paused = false;
    let stopped = false;
    let busy = false;

    // Screen readers hear about pauses and problems, not about every routine update.
    function say(text, announce) {
        status.setAttribute("aria-live", announce ? "polite" : "off");
        status.textContent = text;
    }

    function schedule() {
        clearTimeout(timer);
        timer = null;
        if (!paused && !stopped && !document.hidden) {
            timer = setTimeout(refresh, interval);
        }
    }

    // The element to focus again after the swap: undefined when focus is elsewhere, null when it
    // is inside but cannot be found again (no id), which postpones this refresh.
    function focusToRestore() {
        const active = document.activeElement;
        if (!active || active === document.body || !root.contains(active)) {
            return undefined;
        }
        return active.id || null;
    }

    async function refresh() {
        if (busy) {
            return;
        }
        const focusId = focusToRestore();
        if (focusId === null) {
            schedule();
            return;
        }
        busy = true;
        try {
            const response = await fetch(root.dataset.fragmentUrl, {
                headers: {"X-Requested-With": "XMLHttpRequest"},
                credentials: "same-origin",
                cache: "no-store",
            });
            if (response.redirected || response.status === 403) {
                stopped = true;  // logged out, or no longer allowed: reloading shows why
                say("Updates stopped: reload the page to log in again.", true);
                return;
            }
            if (!response.ok) {
                throw new Error("HTTP " + response.status);
            }
            const html = await response.text();
            if (paused) {
                return;
            }
            const open = Array.from(root.querySelectorAll("details[open][id]"), (details) => details.id);
            root.innerHTML = html;
            for (const id of open) {
                const details = document.getElementById(id);
                if (details) {
                    details.open = true;
                }
            }
            if (focusId) {
                const again = document.getElementById(focusId);
                if (again) {
                    again.focus();
                }
            }
            const body = root.querySelector("[data-updated-at]");
            say("Updated at " + (body ? body.dataset.updatedAt : new Date().toLocaleTimeString()), false);
        } catch (error) {
            say("Could not update (" + error.message + "); trying again.", true);
        } finally {
            busy = false;
            schedule();
        }
    }

    if (pause) {
        pause.hidden = false;
        pause.addEventListener("click", function () {
            paused = !paused;
            pause.textContent = paused ? "Resume updates" : "Pause updates";
            if (paused) {
                say("Updates paused.", true);
                schedule();
            } else {
                refresh();
            }
        });
    }

    document.addEventListener("visibilitychange", function () {
        if (document.hidden) {
            schedule();  // clears the timer
        } else if (!paused && !stopped) {
            refresh();
        }
    });

    schedule();
})();
