import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Paths the CLI needs when it declares its commands (option defaults), in a module that imports
 * nothing heavy: bin.ts loads it statically, and every command's implementation lazily.
 */
export const BIN = fileURLToPath(new URL('./bin.js', import.meta.url));
export const REPO = resolve(dirname(BIN), '../..');
/** The project's copy of the STS PET data (see examples/sts-pet/README.md for source and licence). */
export const DEFAULT_STS_DIR = join(REPO, 'examples', 'sts-pet');
/** The project's copy of the Laleh et al. 2022 Study1-3 tables (CC BY 4.0, see the folder's licence file). */
export const DEFAULT_LALEH_DIR = join(REPO, 'fixtures', 'growth-laleh2022');
