/**
 * Headless Chromium for the page tests: playwright-core driving Debian's /usr/bin/chromium
 * (never a downloaded browser) with the project's flags and a fresh profile folder.
 * `chromiumSkip` is the reason to skip (a string) when the browser or playwright-core is absent.
 */
import { existsSync, mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CHROMIUM = "/usr/bin/chromium";

function hasPlaywright(): boolean {
  try {
    createRequire(import.meta.url).resolve("playwright-core");
    return true;
  } catch {
    return false;
  }
}

export const chromiumSkip: string | false = !existsSync(CHROMIUM) ? `${CHROMIUM} is not installed (apt-get install chromium)`
  : !hasPlaywright() ? "playwright-core is not installed" : false;

type PW = typeof import("playwright-core");
export type BrowserContext = Awaited<ReturnType<PW["chromium"]["launchPersistentContext"]>>;

/** A persistent context in a fresh profile folder; close it when done. */
export async function launchChromium(viewport = { width: 1200, height: 900 }): Promise<BrowserContext> {
  const { chromium } = await import("playwright-core");
  return chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "mynah-chromium-")), {
    executablePath: CHROMIUM, headless: true, viewport,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
}
