import { copyTextLine } from '../../repository/copy-text';

describe('copyTextLine (COPY text format)', () => {
  it('joins columns with tabs, ends the row with a newline and writes NULL as \\N', () => {
    expect(copyTextLine(['7', 'acme', null, 3, '{"a":1}'])).toBe('7\tacme\t\\N\t3\t{"a":1}\n');
  });

  it('escapes backslash, newline, carriage return and tab inside a value', () => {
    expect(copyTextLine(['a\\b', 'line1\nline2', 'cr\rhere', 'tab\there'])).toBe(
      'a\\\\b\tline1\\nline2\tcr\\rhere\ttab\\there\n',
    );
  });

  it('keeps a JSON escape sequence intact: its backslash is doubled so COPY reads it back as written', () => {
    const json = '{"note":"say \\"hi\\"\\n"}';
    expect(copyTextLine([json])).toBe('{"note":"say \\\\"hi\\\\"\\\\n"}\n');
  });

  it('leaves text without special characters (including non-ASCII) as it is', () => {
    expect(copyTextLine(['Zoë – 東京 ✓', ''])).toBe('Zoë – 東京 ✓\t\n');
  });
});

describe('bytea values', () => {
  it('writes a Buffer in hex format, its backslash escaped for COPY', () => {
    expect(copyTextLine([Buffer.from([0, 1, 0xab, 0xff]), Buffer.alloc(0)])).toBe('\\\\x0001abff\t\\\\x\n');
  });
});
