/**
 * Preload for a bridge under test (`node --import <this file's URL>`, or the same in NODE_OPTIONS):
 * records every module the process loads through the ESM loader, one URL a line, in the file named
 * by LOADED_MODULES_FILE. The test reads which packages were loaded, and when.
 *
 * Every package im-bridge imports goes through the ESM loader at least with its entry file (a CommonJS
 * package's own `require`s do not), which is all a "was this package loaded?" question needs.
 * The hooks run on Node's loader thread (./hooks.mjs); it does not run `--import` preloads, so this
 * registers them exactly once per thread that loads modules (the main thread and any worker).
 */
import { register } from "node:module";

const file = process.env.LOADED_MODULES_FILE;
if (!file) throw new Error("LOADED_MODULES_FILE must name the file to record loaded modules in");
register("./hooks.mjs", import.meta.url, { data: { file } });
